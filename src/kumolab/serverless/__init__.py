"""Lab 4 (serverless basics): the student's client commands."""
