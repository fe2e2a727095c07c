"""One script per measured claim; each ends by printing `RESULT {json}`."""
