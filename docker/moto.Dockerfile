# The AWS emulator the tests run against, as an image: moto's server behind
# scripts/lib/moto_server.py, which serves DynamoDB requests, and SQS receives per queue, one
# at a time (stock moto is not atomic there, and the concurrency tests notice). GitLab CI's
# test job runs it as a service container; scripts/test.sh starts the same script directly.
#
#   docker build -f docker/moto.Dockerfile -t recipe-mesh/moto .     (context: the repository)
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim
FROM ${PYTHON_IMAGE}
# The version scripts/lib/env.sh pins for the tests.
RUN pip install --no-cache-dir "moto[server]==5.2.1"
COPY scripts/lib/moto_server.py /opt/recipe-mesh/moto_server.py
USER 65532:65532
EXPOSE 5000
ENTRYPOINT ["python", "/opt/recipe-mesh/moto_server.py", "-H", "0.0.0.0", "-p", "5000"]
