FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The same pinned requirements as `make setup`.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
ENV PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=logiflow.settings.production
# Non-root; it owns only what it writes: the media volume and var/ (collectstatic's STATIC_ROOT).
RUN useradd --system logiflow \
    && mkdir -p /var/lib/logiflow/media /app/var \
    && chown logiflow /var/lib/logiflow/media /app/var
USER logiflow
