package infra

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// goFunctionProps describes one of the project's Go Lambda functions.
type goFunctionProps struct {
	ModuleRoot      string // directory holding go.mod
	Package         string // main package relative to ModuleRoot, e.g. lambda/jitr
	Description     string
	RoleDescription string
	Timeout         awscdk.Duration
	Environment     *map[string]*string
	// Async settings for functions invoked asynchronously; nil leaves Lambda's defaults.
	RetryAttempts *float64
	OnFailure     awslambda.IDestination
}

// goFunction is a Go Lambda function with its own role (no managed policy: grants are added by the caller) and
// its own log group (a month of retention, removed with the stack).
type goFunction struct {
	Function awslambda.Function
	Role     awsiam.Role
	LogGroup awslogs.LogGroup
}

// newGoFunction declares LogGroup, Role and Function in scope: provided.al2023 on arm64, the handler built by the
// local Go bundler as `bootstrap`, 256 MB. Every Go function of the stack is declared through it.
func newGoFunction(scope constructs.Construct, props goFunctionProps) goFunction {
	logGroup := awslogs.NewLogGroup(scope, jsii.String("LogGroup"), &awslogs.LogGroupProps{
		Retention:     awslogs.RetentionDays_ONE_MONTH,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	role := awsiam.NewRole(scope, jsii.String("Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String(props.RoleDescription),
	})
	logGroup.GrantWrite(role)
	fn := awslambda.NewFunction(scope, jsii.String("Function"), &awslambda.FunctionProps{
		Description:   jsii.String(props.Description),
		Runtime:       awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:  awslambda.Architecture_ARM_64(),
		Handler:       jsii.String("bootstrap"),
		Code:          goLambdaCode(props.ModuleRoot, props.Package),
		Role:          role,
		LogGroup:      logGroup,
		MemorySize:    jsii.Number(256),
		Timeout:       props.Timeout,
		Environment:   props.Environment,
		RetryAttempts: props.RetryAttempts,
		OnFailure:     props.OnFailure,
	})
	return goFunction{Function: fn, Role: role, LogGroup: logGroup}
}
