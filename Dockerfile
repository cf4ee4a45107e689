# syntax=docker/dockerfile:1
# Runs the engine against an existing NATS server: docker run -e NATS_URL=nats://nats:4222 achd
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY cmd ./cmd
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    ACH_HTTP_HOST=0.0.0.0 \
    PORT=8080 \
    ACH_LOG_JSON=1
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY config ./config
COPY scripts ./scripts
USER node
EXPOSE 8080
# NATS_URL is required in the image: it carries no nats-server of its own.
ENTRYPOINT ["node", "bin/achd.js"]
CMD ["start"]
