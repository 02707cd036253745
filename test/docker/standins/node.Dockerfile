# Stand-in for node:20-bookworm-slim and node:20-alpine where Docker Hub is out of reach: the host's own
# Node and npm on a Debian minbase, with the user `node` (uid 1000) both official images have.
FROM p2pal-standin/bookworm:minbase
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
# The registry's TLS is intercepted on the machines this runs on: the build stage's `npm ci` trusts the
# host's CA bundle. Test images only; the shipped Dockerfile trusts what its base image trusts.
COPY ca.pem /usr/local/share/host-ca.pem
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/host-ca.pem npm_config_cafile=/usr/local/share/host-ca.pem
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
  && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
  && useradd --uid 1000 --create-home --shell /bin/sh node
CMD ["node"]
