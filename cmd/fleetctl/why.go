package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/internal/operate"
)

// runWhy explains why a device is not connected: the verdict, the evidence in time order, the fix.
func runWhy(ctx context.Context, c *cli) error {
	groups, err := c.stackLogGroups(ctx)
	if err != nil {
		return err
	}
	operate.WithDiagnosis(cloudwatchlogs.NewFromConfig(c.aws), groups, sqs.NewFromConfig(c.aws))(c.fleet)
	v, err := c.fleet.Why(ctx, c.args[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(v)
	}
	w := c.stdout
	fmt.Fprintf(w, "device   %s\nverdict  %s\n\n%s\n\nfix: %s\n", v.Thing, v.Case, v.Summary, v.Fix)
	if len(v.Evidence) > 0 {
		fmt.Fprintln(w, "\nevidence:")
		for _, e := range v.Evidence {
			at := ""
			if !e.At.IsZero() {
				at = e.At.UTC().Format("2006-01-02 15:04:05") + "  "
			}
			fmt.Fprintf(w, "  %s[%s] %s\n", at, e.Source, e.Text)
		}
	}
	for _, n := range v.Notes {
		fmt.Fprintf(w, "\nnote: %s\n", n)
	}
	return nil
}

// stackLogGroups are the stack's log groups (its functions'): from the emulator's info, or CloudFormation's list
// of the stack's resources.
func (c *cli) stackLogGroups(ctx context.Context) ([]string, error) {
	if c.emulator != "" {
		return c.logGroups, nil
	}
	var groups []string
	pages := cloudformation.NewListStackResourcesPaginator(cloudformation.NewFromConfig(c.aws), &cloudformation.ListStackResourcesInput{StackName: aws.String(c.stack)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list the resources of stack %s (its log groups): %w", c.stack, err)
		}
		for _, r := range page.StackResourceSummaries {
			if aws.ToString(r.ResourceType) == "AWS::Logs::LogGroup" && !strings.HasPrefix(string(r.ResourceStatus), "DELETE") {
				groups = append(groups, aws.ToString(r.PhysicalResourceId))
			}
		}
	}
	return groups, nil
}
