# The seed's make targets; each calls an npm script (package.json is the source of truth).
# `_quick` variants reuse the Docker images already built instead of rebuilding them.
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: up build test test_coverage lint test_integration test_integration_quick \
	test_resume test_resume_quick test_reconnect test_reconnect_quick

up:
	$(COMPOSE) up

build:
	npm run build

test:
	npm test

test_coverage:
	npm run test:coverage

lint:
	npm run lint
	npm run typecheck

test_integration:
	P2PAL_DOCKER_BUILD=always npm run test:docker

test_integration_quick:
	P2PAL_DOCKER_BUILD=skip npm run test:docker

test_resume:
	P2PAL_DOCKER_BUILD=always npm run test:resume

test_resume_quick:
	P2PAL_DOCKER_BUILD=skip npm run test:resume

test_reconnect:
	P2PAL_DOCKER_BUILD=always npm run test:reconnect

test_reconnect_quick:
	P2PAL_DOCKER_BUILD=skip npm run test:reconnect
