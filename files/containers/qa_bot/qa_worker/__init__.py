"""QA worker: extractive question answering fed by SQS, answers stored in DynamoDB."""
