"""Serve the publish and fleet-scan deployments from one process (local use, e2e tests).

    prefect server start                      # triggers and schedules need a real server
    PREFECT_API_URL=http://127.0.0.1:4200/api python flows/serve.py

Configure with TOGETHER_API_KEY, AWS credentials, TOGETHER_LORA_STAGING_URI and the
TOGETHER_LORA_FLEET_* variables (see prefect_together_lora.deployments).
"""

from prefect import serve

from prefect_together_lora.deployments import fleet_deployment, publish_deployment

if __name__ == "__main__":
    serve(publish_deployment(), fleet_deployment(), limit=8)
