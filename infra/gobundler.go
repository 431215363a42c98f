package infra

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/internal/lambdabuild"
)

// goBundler builds a Go Lambda handler locally (no Docker) as the `bootstrap` executable the provided.al2023
// runtime starts. It implements awscdk.ILocalBundling and must be passed by pointer.
type goBundler struct {
	moduleRoot string // directory holding go.mod
	pkg        string // package to build, relative to moduleRoot, e.g. ./lambda/jitr
}

// TryBundle builds the handler for linux/arm64 (the functions' architecture) into outputDir. A failed build stops the synth with the compiler's
// output instead of falling back to Docker.
func (b *goBundler) TryBundle(outputDir *string, _ *awscdk.BundlingOptions) *bool {
	if _, err := lambdabuild.Build(context.Background(), b.moduleRoot, b.pkg, "arm64", *outputDir); err != nil {
		panic(fmt.Sprintf("bundle %s: %v", b.pkg, err))
	}
	return jsii.Bool(true)
}

// goLambdaCode returns the Lambda code asset for the Go main package pkg (relative to moduleRoot). The asset hash is
// taken from the built binary: the package imports code outside its directory, so hashing the source folder alone
// would miss changes.
func goLambdaCode(moduleRoot, pkg string) awslambda.Code {
	return awslambda.Code_FromAsset(jsii.String(filepath.Join(moduleRoot, pkg)), &awss3assets.AssetOptions{
		AssetHashType: awscdk.AssetHashType_OUTPUT,
		Bundling: &awscdk.BundlingOptions{
			// Required by the API; never used, because the local bundler always succeeds or stops the synth.
			Image: awscdk.DockerImage_FromRegistry(jsii.String("golang")),
			Local: &goBundler{moduleRoot: moduleRoot, pkg: "./" + filepath.ToSlash(pkg)},
		},
	})
}
