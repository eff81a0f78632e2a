# Tally's image: the one static agent binary (node agent, collector, CLI),
# for linux/amd64 and linux/arm64.
#
# The binaries are built first, outside any container, with the eBPF
# programs of each architecture inside them (a BPF target build needs the
# nightly toolchain and bpf-linker, which `cargo xtask dist` sets up).
#
# Offline, with no daemon, BuildKit or registry (what `cargo xtask image`
# runs; README, "Image"):
#
#   cargo xtask image     # target/image/oci: an OCI index of both platforms
#
# or with BuildKit and a registry:
#
#   cargo xtask dist
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/tally:0.1.0 --push .
#
# Both builders set TARGETARCH to amd64 or arm64 for each platform, the
# names target/dist/ uses. Only COPY runs, so the arm64 image builds on an
# amd64 host without emulation. There is no `# syntax=` line: it would make
# BuildKit pull a frontend from a registry, and the built-in one has all
# this file uses.
FROM scratch
ARG TARGETARCH
COPY --chmod=0555 target/dist/linux-${TARGETARCH}/agent /agent
# Root for the agent (which also needs hostPID and its capabilities, see
# deploy/agent-daemonset.yaml); the collector's Deployment sets a non-root
# user of its own.
USER 0:0
ENTRYPOINT ["/agent"]
CMD ["--help"]
