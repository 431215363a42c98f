package infra

import (
	"strings"

	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// suppress records a cdk-nag suppression on construct (and its children) with the reason it is acceptable.
// appliesTo narrows a granular rule (IAM4/IAM5) to the findings named; one written /like this/ is a regular
// expression (for findings naming a generated logical id).
func suppress(construct any, id, reason string, appliesTo ...string) {
	s := &cdknag.NagPackSuppression{Id: jsii.String(id), Reason: jsii.String(reason)}
	if len(appliesTo) > 0 {
		list := make([]any, len(appliesTo))
		for i, a := range appliesTo {
			if len(a) > 1 && strings.HasPrefix(a, "/") && strings.HasSuffix(a, "/") {
				list[i] = &cdknag.RegexAppliesTo{Regex: jsii.String(a)}
				continue
			}
			list[i] = a
		}
		s.AppliesTo = &list
	}
	cdknag.NagSuppressions_AddResourceSuppressions(construct, &[]*cdknag.NagPackSuppression{s}, jsii.Bool(true))
}
