package lambdaruntime

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/identity"
	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// InvokeEndpoint is Lambda's Invoke API for the functions the emulator runs (AWS_ENDPOINT_URL_LAMBDA points the
// functions at it): the teardown function continues itself with it. It authorises the caller as Lambda does, with
// the caller's role (lambda:InvokeFunction on the function's ARN), after checking its SigV4 signature.
type InvokeEndpoint struct {
	ids *identity.Registry
	tl  *timeline.Timeline
	srv *http.Server
	url string

	mu  sync.Mutex
	fns map[string]*Function // by physical name
}

// StartInvokeEndpoint serves Invoke on a loopback port.
func StartInvokeEndpoint(ids *identity.Registry, tl *timeline.Timeline) (*InvokeEndpoint, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &InvokeEndpoint{ids: ids, tl: tl, url: "http://" + ln.Addr().String(), fns: map[string]*Function{}}
	e.srv = &http.Server{Handler: http.HandlerFunc(e.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.srv.Serve(ln) }()
	return e, nil
}

// URL is the endpoint's address, for AWS_ENDPOINT_URL_LAMBDA.
func (e *InvokeEndpoint) URL() string { return e.url }

// Add makes fn invocable.
func (e *InvokeEndpoint) Add(fn *Function) {
	e.mu.Lock()
	e.fns[fn.Deployed.Name] = fn
	e.mu.Unlock()
}

// Close stops the endpoint.
func (e *InvokeEndpoint) Close() error { return e.srv.Close() }

// serve answers POST /2015-03-31/functions/{FunctionName}/invocations as Lambda does: 202 for an Event
// invocation (queued, retried as Lambda retries), 200 with the function's result for RequestResponse.
func (e *InvokeEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/2015-03-31/functions/")
	name, ok2 := strings.CutSuffix(name, "/invocations")
	if r.Method != http.MethodPost || !ok || !ok2 {
		lambdaError(w, http.StatusNotFound, "UnknownOperationException", "only Invoke is served here")
		return
	}
	if i := strings.LastIndex(name, ":function:"); i >= 0 { // an ARN
		name = name[i+len(":function:"):]
	}
	name, _, _ = strings.Cut(name, ":") // a qualifier
	body, err := io.ReadAll(io.LimitReader(r.Body, 256<<10))
	if err != nil {
		lambdaError(w, http.StatusBadRequest, "InvalidRequestContentException", err.Error())
		return
	}
	caller, err := e.ids.Authenticate(r, body)
	if err != nil {
		lambdaError(w, http.StatusForbidden, "AccessDeniedException", err.Error())
		return
	}
	e.mu.Lock()
	fn, found := e.fns[name]
	e.mu.Unlock()
	if !found {
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+name)
		return
	}
	if !policy.Allowed(policy.Request{Action: "lambda:InvokeFunction", Resource: fn.Deployed.ARN}, caller.Policy) {
		e.tl.Event("lambda", "Invoke of %s by %s refused: its role does not allow lambda:InvokeFunction on it", name, caller.Function)
		lambdaError(w, http.StatusForbidden, "AccessDeniedException", caller.Function+" is not authorized to perform lambda:InvokeFunction on "+fn.Deployed.ARN)
		return
	}
	switch lambdatypes.InvocationType(r.Header.Get("X-Amz-Invocation-Type")) {
	case lambdatypes.InvocationTypeEvent:
		if !fn.Enqueue(body) {
			lambdaError(w, http.StatusServiceUnavailable, "ServiceException", "the function is stopping")
			return
		}
		e.tl.Event("lambda", "%s invoked %s asynchronously (Invoke, InvocationType Event)", caller.Function, name)
		w.WriteHeader(http.StatusAccepted)
	case lambdatypes.InvocationTypeDryRun:
		w.WriteHeader(http.StatusNoContent)
	default:
		out, err := fn.Invoke(r.Context(), body)
		var fe *FunctionError
		if errors.As(err, &fe) {
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
		} else if err != nil {
			lambdaError(w, http.StatusBadGateway, "ServiceException", err.Error())
			return
		}
		_, _ = w.Write(out)
	}
}

// lambdaError writes an error as Lambda's REST-JSON protocol does (the type in X-Amzn-ErrorType).
func lambdaError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "message": msg})
}
