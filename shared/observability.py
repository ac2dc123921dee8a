"""One Logger, Tracer and Metrics for every function (Powertools; names from the environment)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
