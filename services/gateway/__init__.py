"""The gateway service: estimates cost, runs jobs through the stages and manages aliases."""
