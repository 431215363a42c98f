// Command sphere-jitr is the CDK app: it reads the context (see README, "Configuration"), validates it, and
// synthesizes the stack that puts an Azure Sphere tenant's devices on AWS IoT Core with just-in-time registration.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/sphere-jitr/sphere-jitr/internal/config"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/stacks"
)

func main() {
	defer jsii.Close()

	app := awscdk.NewApp(nil)
	cfg, err := config.Load(func(key string) any { return app.Node().TryGetContext(jsii.String(key)) }, time.Now())
	if err != nil {
		fmt.Fprintf(os.Stderr, "sphere-jitr: invalid configuration:\n%v\n", err)
		os.Exit(1)
	}
	stacks.NewSphereJitrStack(app, contract.StackName, &stacks.SphereJitrStackProps{
		StackProps: awscdk.StackProps{Description: jsii.String("Azure Sphere devices on AWS IoT Core with just-in-time registration")},
		Config:     cfg,
		ModuleRoot: ".",
	})
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	app.Synth(nil)
}
