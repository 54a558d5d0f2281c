# One image for Dataflow: the Beam SDK worker (--sdk_container_image) and the Flex Template launcher.
# Beam's version must equal the pin in pyproject.toml (tests/test_deploy.py checks it).
ARG BEAM_VERSION=2.77.0
ARG PYTHON_VERSION=3.11

FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:latest AS launcher

FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}
COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

WORKDIR /template
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY transforms ./transforms
COPY scoring ./scoring
COPY templates ./templates
# Install the package from this tree (with the gcp extra), then fail the build on any dependency conflict.
RUN pip install --no-cache-dir ".[gcp]" && pip check

# The launcher runs this file with the template parameters as --name=value flags.
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/flex_main.py
ENV PIP_NO_DEPS=True

# As a worker image the entrypoint is Beam's boot; the launcher image role is taken by Dataflow when the
# template is launched (it runs /opt/google/dataflow/python_template_launcher).
ENTRYPOINT ["/opt/apache/beam/boot"]
