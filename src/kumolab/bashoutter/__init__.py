"""Lab 5 (Bashoutter): the student's client commands."""
