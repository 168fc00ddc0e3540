FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY messages messages
COPY readstore readstore
COPY sagas sagas
COPY workers workers
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["sagaworks"]
