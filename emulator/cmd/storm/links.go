package main

// Where the devices' connections are made. A connected device holds a TLS connection, and while the broker runs in
// the storm's process that process holds both ends of it: 10 000 devices are 20 000 descriptors, a usual hard limit
// of a container, which a process without privileges may not raise. Past what the limit allows (-device-process
// auto), the devices' connections are made in a process of their own (storm device-process), which the bench
// drives over net/rpc on its standard input and output; each device's attempts, backoff and timings stay in the
// bench, and the child's CPU is reported as emulator_cpu's devices.

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/rpc"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// links makes and keeps the devices' connections.
type links interface {
	// connect makes one connection attempt of device i with its current certificate and keeps it if it connects.
	connect(i int, d *device) error
	// connected says, for devices 0..n-1, whether the connection kept for each is up.
	connected(n int) []bool
	disconnectAll()
	// pid is the process that holds the connections when not the storm's own, or 0.
	pid() int
	close() error
}

// descriptorsPerDevice is what one connected device costs the process that holds both ends; descriptorsSpare is
// what the emulator's own connections (moto, functions, the broker's listener) need besides.
const (
	descriptorsPerDevice = 2
	descriptorsSpare     = 2000
)

// needDeviceProcess reports whether n devices' connections fit in this process's descriptor limit.
func needDeviceProcess(n int) (bool, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return false, fmt.Errorf("read the open-files limit: %w", err)
	}
	need := uint64(n*descriptorsPerDevice + descriptorsSpare)
	if need <= lim.Cur {
		return false, nil
	}
	if uint64(n+descriptorsSpare) > lim.Cur {
		return false, fmt.Errorf("%d devices need about %d open files in each of two processes and the limit is %d: raise it (ulimit -n) or run fewer devices", n, n+descriptorsSpare, lim.Cur)
	}
	return true, nil
}

// localLinks makes the connections in the storm's process.
type localLinks struct{ devices []*device }

func (l *localLinks) connect(_ int, d *device) error {
	c, err := d.ConnectOnce(d.Thing, d.Certificate())
	if err == nil {
		d.client = c
	}
	return err
}

func (l *localLinks) connected(n int) []bool {
	up := make([]bool, n)
	for i, d := range l.devices[:n] {
		up[i] = d.client != nil && d.client.IsConnected()
	}
	return up
}

func (l *localLinks) disconnectAll() {
	for _, d := range l.devices {
		if d.client != nil {
			d.client.Disconnect(0)
			d.client = nil
		}
	}
}

func (l *localLinks) pid() int     { return 0 }
func (l *localLinks) close() error { l.disconnectAll(); return nil }

// remoteLinks makes the connections in a child process (storm device-process).
type remoteLinks struct {
	cmd    *exec.Cmd
	client *rpc.Client
	once   sync.Once
}

// startDeviceProcess starts storm device-process and gives it what every device is given: the broker's endpoint
// and the server CA it trusts.
func startDeviceProcess(endpoint string, serverCA *x509.Certificate, connectTimeout time.Duration) (*remoteLinks, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "device-process")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the device process: %w", err)
	}
	r := &remoteLinks{cmd: cmd, client: rpc.NewClient(pipe{out, in})}
	args := InitArgs{Endpoint: endpoint, ServerCA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverCA.Raw}), ConnectTimeout: connectTimeout}
	if err := r.client.Call("Devices.Init", args, new(int)); err != nil {
		_ = r.close()
		return nil, fmt.Errorf("the device process: %w", err)
	}
	return r, nil
}

// pipe is the child's standard output and input as one connection.
type pipe struct {
	io.ReadCloser
	w io.WriteCloser
}

func (p pipe) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipe) Close() error                { return errors.Join(p.w.Close(), p.ReadCloser.Close()) }

func (r *remoteLinks) connect(i int, d *device) error {
	c := d.Certificate()
	key, err := x509.MarshalECPrivateKey(c.Key)
	if err != nil {
		return err
	}
	var refused string
	if err := r.client.Call("Devices.Connect", ConnectArgs{Index: i, Thing: d.Thing, Cert: c.Cert.Raw, Key: key}, &refused); err != nil {
		r.once.Do(func() { fmt.Fprintln(os.Stderr, "storm: the device process failed:", err) })
		return err
	}
	if refused != "" {
		return errors.New(refused)
	}
	return nil
}

func (r *remoteLinks) connected(n int) []bool {
	var up []bool
	if err := r.client.Call("Devices.Connected", n, &up); err != nil || len(up) != n {
		fmt.Fprintln(os.Stderr, "storm: the device process did not say which devices are connected:", err)
		return make([]bool, n)
	}
	return up
}

func (r *remoteLinks) disconnectAll() { _ = r.client.Call("Devices.DisconnectAll", 0, new(int)) }

func (r *remoteLinks) pid() int { return r.cmd.Process.Pid }

// close ends the child: its connections close with its standard input.
func (r *remoteLinks) close() error {
	_ = r.client.Close()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		return <-done
	}
}

// InitArgs is what the device process is given once.
type InitArgs struct {
	Endpoint       string
	ServerCA       []byte // PEM
	ConnectTimeout time.Duration
}

// ConnectArgs is one connection attempt: the device's index, its thing name (the client id), its certificate (DER)
// and key (SEC 1 DER).
type ConnectArgs struct {
	Index     int
	Thing     string
	Cert, Key []byte
}

// Devices is the device process's RPC service.
type Devices struct {
	mu      sync.Mutex
	dev     *devicesim.Device
	clients map[int]paho.Client
}

func (s *Devices) Init(a InitArgs, _ *int) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(a.ServerCA) {
		return errors.New("no server CA certificate")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dev = devicesim.NewDevice("device-process", nil, devicesim.Config{Endpoint: a.Endpoint, ServerCAs: pool, ConnectTimeout: a.ConnectTimeout})
	s.clients = map[int]paho.Client{}
	return nil
}

// Connect makes one attempt; a refusal is its answer (refused), not a failure of the call.
func (s *Devices) Connect(a ConnectArgs, refused *string) error {
	s.mu.Lock()
	dev := s.dev
	s.mu.Unlock()
	if dev == nil {
		return errors.New("Init first")
	}
	cert, err := x509.ParseCertificate(a.Cert)
	if err != nil {
		return err
	}
	key, err := x509.ParseECPrivateKey(a.Key)
	if err != nil {
		return err
	}
	c, err := dev.ConnectOnce(a.Thing, &testpki.Pair{Cert: cert, Key: key})
	if err != nil {
		*refused = err.Error()
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.clients[a.Index]; old != nil {
		old.Disconnect(0)
	}
	s.clients[a.Index] = c
	return nil
}

func (s *Devices) Connected(n int, up *[]bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	*up = make([]bool, n)
	for i := range n {
		c := s.clients[i]
		(*up)[i] = c != nil && c.IsConnected()
	}
	return nil
}

func (s *Devices) DisconnectAll(_ int, _ *int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.clients {
		c.Disconnect(0)
		delete(s.clients, i)
	}
	return nil
}

// deviceProcess is storm device-process: it serves Devices on its standard input and output until the input closes.
func deviceProcess() error {
	srv := rpc.NewServer()
	s := &Devices{}
	if err := srv.RegisterName("Devices", s); err != nil {
		return err
	}
	srv.ServeConn(pipe{os.Stdin, os.Stdout})
	return s.DisconnectAll(0, new(int))
}
