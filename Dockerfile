FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY campaigns ./campaigns
COPY migrations ./migrations
RUN pip install --no-cache-dir .
ENV CALLBRIDGE_HOST=0.0.0.0 CALLBRIDGE_PORT=8080
EXPOSE 8080
CMD ["sh", "-c", "callbridge db upgrade && callbridge serve"]
