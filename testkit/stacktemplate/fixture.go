package stacktemplate

import (
	"encoding/json"
	"strings"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

func arnJoin(suffix string) map[string]any {
	return map[string]any{"Fn::Join": []any{"", []any{
		"arn:", map[string]any{"Ref": "AWS::Partition"}, ":iot:", map[string]any{"Ref": "AWS::Region"}, ":",
		map[string]any{"Ref": "AWS::AccountId"}, suffix,
	}}}
}

// Fixture builds, for tests, a small template shaped like the stack's synthesized one: two tenant CAs, the device
// policy, one topic rule per CA to one function, a bucket, outputs.
func Fixture(caPEMs, verifPEMs []string) (*Template, error) {
	res := map[string]any{}
	var caRefs []any
	for i, pemText := range caPEMs {
		id := "TenantCA" + string(rune('A'+i)) + "0123"
		res[id] = map[string]any{"Type": "AWS::IoT::CACertificate", "Properties": map[string]any{
			"CACertificatePem": pemText, "Status": "ACTIVE", "AutoRegistrationStatus": "ENABLE",
			"CertificateMode": "DEFAULT", "VerificationCertificatePem": verifPEMs[i],
		}}
		caRefs = append(caRefs, map[string]any{"Ref": id})
		res["Rule"+id] = map[string]any{"Type": "AWS::IoT::TopicRule", "Properties": map[string]any{
			"TopicRulePayload": map[string]any{
				"Sql":              map[string]any{"Fn::Join": []any{"", []any{"SELECT * FROM '$aws/events/certificates/registered/", map[string]any{"Ref": id}, "'"}}},
				"AwsIotSqlVersion": "2016-03-23",
				"Actions":          []any{map[string]any{"Lambda": map[string]any{"FunctionArn": map[string]any{"Fn::GetAtt": []any{"JitrFunction9", "Arn"}}}}},
				"ErrorAction":      map[string]any{"Sqs": map[string]any{"QueueUrl": map[string]any{"Ref": "Dlq1"}}},
			},
		}}
	}
	res["DevicePolicy1"] = map[string]any{"Type": "AWS::IoT::Policy", "Properties": map[string]any{"PolicyDocument": map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{
			map[string]any{"Effect": "Allow", "Action": []any{"iot:Connect"}, "Resource": []any{arnJoin(":client/${iot:Connection.Thing.ThingName}")},
				"Condition": map[string]any{"Bool": map[string]any{"iot:Connection.Thing.IsAttached": "true"}}},
			map[string]any{"Effect": "Allow", "Action": "iot:Publish", "Resource": []any{arnJoin(":topic/devices/${iot:Connection.Thing.ThingName}/*")}},
			map[string]any{"Effect": "Allow", "Action": "iot:Subscribe", "Resource": []any{arnJoin(":topicfilter/devices/${iot:Connection.Thing.ThingName}/*")}},
			map[string]any{"Effect": "Allow", "Action": "iot:Receive", "Resource": []any{arnJoin(":topic/devices/${iot:Connection.Thing.ThingName}/*")}},
		},
	}}}
	res["JitrFunction9"] = map[string]any{"Type": "AWS::Lambda::Function", "Properties": map[string]any{
		"Role": map[string]any{"Fn::GetAtt": []any{"Role1", "Arn"}},
		"Environment": map[string]any{"Variables": map[string]any{
			contract.EnvCACertificateIDs:  map[string]any{"Fn::Join": []any{",", caRefs}},
			contract.EnvCACertificatesPEM: strings.Join(caPEMs, ""),
			contract.EnvDevicePolicyName:  map[string]any{"Ref": "DevicePolicy1"},
			contract.EnvProvisionedBy:     map[string]any{"Ref": "AWS::StackName"},
			"DLQ":                         map[string]any{"Fn::Sub": "${Dlq1.Arn} in ${AWS::Region}"},
		}},
	}}
	res["Role1"] = map[string]any{"Type": "AWS::IAM::Role", "Properties": map[string]any{}}
	res["Dlq1"] = map[string]any{"Type": "AWS::SQS::Queue", "Properties": map[string]any{}}
	res["DemoBucket1"] = map[string]any{"Type": "AWS::S3::Bucket", "Properties": map[string]any{}}
	doc := map[string]any{
		"Parameters": map[string]any{"BootstrapVersion": map[string]any{"Type": "String", "Default": "/cdk-bootstrap/version"}},
		"Resources":  res,
		"Outputs": map[string]any{
			contract.OutputCACertificateIDs: map[string]any{"Value": map[string]any{"Fn::Join": []any{",", caRefs}}},
			contract.OutputDevicePolicyName: map[string]any{"Value": map[string]any{"Ref": "DevicePolicy1"}},
			contract.OutputDemoBucketName:   map[string]any{"Value": map[string]any{"Ref": "DemoBucket1"}},
			contract.OutputRegion:           map[string]any{"Value": map[string]any{"Ref": "AWS::Region"}},
		},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return ParseTemplate(data)
}

// FixtureCA makes a tenant-like CA for Fixture: its PEM and its verification certificate's (CN
// "registration-code").
func FixtureCA(cn string) (caPEM, verificationPEM string, err error) {
	ca, err := testpki.NewCA(testpki.CAOptions{CommonName: cn})
	if err != nil {
		return "", "", err
	}
	v, err := ca.IssueVerification("registration-code")
	if err != nil {
		return "", "", err
	}
	return string(ca.CertPEM()), string(v.CertPEM()), nil
}
