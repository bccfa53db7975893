# The operator image: `oscar-batch run` with the runtime dependencies only (no sandbox, no test tools).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
# A numeric user, so that `runAsNonRoot` can verify it.
USER 65532:65532
ENTRYPOINT ["oscar-batch"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
