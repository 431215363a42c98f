package moto_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// TestConditionalWritesAreAtomic makes many concurrent conditional claims of one item, as concurrent deliveries of
// one certificate's event claim its ledger entry (internal/jitr): DynamoDB applies a conditional write atomically,
// so exactly one claim of each round wins and every other is refused with ConditionalCheckFailedException. moto
// alone evaluates the condition and applies the update without a lock (dynamodb.py serializes them).
func TestConditionalWritesAreAtomic(t *testing.T) {
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db := dynamodb.NewFromConfig(aws.Config{
		Region:           motoserver.Region,
		Credentials:      credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""),
		BaseEndpoint:     aws.String(moto.URL),
		RetryMaxAttempts: 1,
	})
	table := "claims"
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("Id"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("Id"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	const rounds, claimants = 100, 20
	broken := 0
	for round := range rounds {
		key := map[string]ddbtypes.AttributeValue{"Id": &ddbtypes.AttributeValueMemberS{Value: fmt.Sprint("item-", round)}}
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			wins   []string
			others []error
			start  = make(chan struct{})
		)
		for c := range claimants {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
					TableName: aws.String(table), Key: key,
					UpdateExpression:          aws.String("SET Holder = :me"),
					ConditionExpression:       aws.String("attribute_not_exists(Id)"),
					ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":me": &ddbtypes.AttributeValueMemberS{Value: strconv.Itoa(c)}},
				})
				var failed *ddbtypes.ConditionalCheckFailedException
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins = append(wins, strconv.Itoa(c))
				case !errors.As(err, &failed):
					others = append(others, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(others) > 0 {
			t.Fatalf("round %d: claims failed otherwise than by their condition: %v", round, others)
		}
		if len(wins) != 1 {
			broken++
			t.Logf("round %d: %d of %d concurrent conditional claims of one item won (claimants %v), want exactly 1", round, len(wins), claimants, wins)
		}
	}
	if broken > 0 {
		t.Errorf("%d of %d rounds of %d concurrent conditional claims of one item had other than exactly one winner", broken, rounds, claimants)
	}
}
