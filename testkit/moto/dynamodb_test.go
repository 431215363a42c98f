package moto_test

import (
	"context"
	"encoding/json"
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

// TestConditionalWritesAreAtomic makes many concurrent conditional claims of one item (UpdateItem and PutItem), as
// concurrent deliveries of one certificate's event claim its ledger entry (internal/jitr): DynamoDB applies a
// conditional write atomically,
// so exactly one claim of each round wins and every other is refused with ConditionalCheckFailedException. moto
// alone evaluates the condition and applies the update without a lock (dynamodb.py serializes them).
func TestConditionalWritesAreAtomic(t *testing.T) {
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db := dynamodb.NewFromConfig(aws.Config{
		Region:       motoserver.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""),
		BaseEndpoint: aws.String(moto.URL),
		Retryer:      motoserver.LostAnswerRetryer,
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
				me := &ddbtypes.AttributeValueMemberS{Value: strconv.Itoa(c)}
				var err error
				if c%2 == 0 {
					_, err = db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
						TableName: aws.String(table), Key: key,
						UpdateExpression:          aws.String("SET Holder = :me"),
						ConditionExpression:       aws.String("attribute_not_exists(Id)"),
						ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":me": me},
					})
				} else { // a PutItem names its item's key in the item: the same item, the same lock
					_, err = db.PutItem(ctx, &dynamodb.PutItemInput{
						TableName: aws.String(table), Item: map[string]ddbtypes.AttributeValue{"Id": key["Id"], "Holder": me},
						ConditionExpression: aws.String("attribute_not_exists(Id)"),
					})
				}
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

// TestQueryOnAnIndexIsAuthorizedOnTheIndex: IAM authorizes a Query that names an index on the index's ARN (AWS's
// DynamoDB examples grant dynamodb:Query on table/<name>/index/<index> alone), a Query of the table on the table's.
// A role allowed the index only queries the index and not the table.
func TestQueryOnAnIndexIsAuthorizedOnTheIndex(t *testing.T) {
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin := dynamodb.NewFromConfig(aws.Config{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Retryer: motoserver.LostAnswerRetryer,
		Credentials: credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, "")})
	table, index := "indexed", "ByState"
	if _, err := admin.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("Id"), AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String("State"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:   []ddbtypes.KeySchemaElement{{AttributeName: aws.String("Id"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode: ddbtypes.BillingModePayPerRequest,
		GlobalSecondaryIndexes: []ddbtypes.GlobalSecondaryIndex{{IndexName: aws.String(index),
			KeySchema:  []ddbtypes.KeySchemaElement{{AttributeName: aws.String("State"), KeyType: ddbtypes.KeyTypeHash}},
			Projection: &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeKeysOnly}}},
	}); err != nil {
		t.Fatal(err)
	}
	arn := fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s/index/%s", motoserver.Region, motoserver.AccountID, table, index)
	p := motoserver.Principal{AccessKeyID: motoserver.FunctionAccessKey("IndexReader"), RoleArn: "arn:aws:iam::" + motoserver.AccountID + ":role/index-reader",
		SessionName: "index-reader", Policies: []json.RawMessage{json.RawMessage(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"dynamodb:Query","Resource":"` + arn + `"}]}`)}}
	if err := moto.RegisterPrincipal(ctx, p); err != nil {
		t.Fatal(err)
	}
	reader := dynamodb.NewFromConfig(aws.Config{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Retryer: motoserver.LostAnswerRetryer, Credentials: p.Credentials()})
	query := func(in *dynamodb.QueryInput) error {
		in.TableName = aws.String(table)
		in.ExpressionAttributeValues = map[string]ddbtypes.AttributeValue{":v": &ddbtypes.AttributeValueMemberS{Value: "x"}}
		_, err := reader.Query(ctx, in)
		return err
	}
	if err := query(&dynamodb.QueryInput{IndexName: aws.String(index), KeyConditionExpression: aws.String("#s = :v"),
		ExpressionAttributeNames: map[string]string{"#s": "State"}}); err != nil {
		t.Errorf("Query on the index with a grant on the index: %v, want allowed", err)
	}
	if err := query(&dynamodb.QueryInput{KeyConditionExpression: aws.String("Id = :v")}); err == nil {
		t.Error("Query on the table with a grant on the index only: allowed, want AccessDeniedException")
	}
}
