"""OSCAR-Batch: run an OSCAR service over every object of an S3 bucket, tracked by a Kubernetes operator."""
