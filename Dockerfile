# Minimal CPU image; the deployment work (multi-stage, CUDA variant, healthcheck) builds on this.
FROM node:20.20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json .npmrc tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
COPY models ./models
RUN npm ci --no-audit --no-fund && npm prune --omit=dev
USER node
ENTRYPOINT ["node", "bin/mop.js"]
CMD ["generate"]
