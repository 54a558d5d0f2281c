#!/usr/bin/env bash
# Create (or replace) a Cloud Scheduler job that launches the satsft Flex Template on a schedule.
# Fill PROJECT, REGION, BUCKET and the scheduler's service account first; the body is launch-body.json beside
# this file with the same placeholders replaced. The service account needs roles/dataflow.developer and
# roles/iam.serviceAccountUser on the Dataflow worker service account.
set -euo pipefail
PROJECT=${PROJECT:?set PROJECT}
REGION=${REGION:?set REGION}
BUCKET=${BUCKET:?set BUCKET}
SCHEDULER_SA=${SCHEDULER_SA:?set SCHEDULER_SA (the service account Cloud Scheduler calls Dataflow as)}
SCHEDULE=${SCHEDULE:-"0 3 * * *"}
here=$(cd "$(dirname "$0")" && pwd)
body=$(mktemp)
sed -e "s/PROJECT/${PROJECT}/g" -e "s/REGION/${REGION}/g" -e "s/BUCKET/${BUCKET}/g" "$here/launch-body.json" > "$body"
gcloud scheduler jobs delete satsft-nightly --location "$REGION" --quiet 2>/dev/null || true
gcloud scheduler jobs create http satsft-nightly --location "$REGION" --schedule "$SCHEDULE" --time-zone UTC \
  --uri "https://dataflow.googleapis.com/v1b3/projects/${PROJECT}/locations/${REGION}/flexTemplates:launch" \
  --http-method POST --headers Content-Type=application/json \
  --oauth-service-account-email "$SCHEDULER_SA" \
  --oauth-token-scope https://www.googleapis.com/auth/cloud-platform \
  --message-body-from-file "$body"
rm -f "$body"
