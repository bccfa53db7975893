-- Argo CD health of an OscarBatchJob (batch.oscarbatch.dev), read from the status its operator writes.
-- The one source of this check: argocd-cm.yaml embeds it verbatim (tests/test_argocd_health.py checks both).
--   Healthy      phase Succeeded
--   Degraded     phase Failed, or a condition a person must act on, even while Pending or Running
--   Suspended    phase Suspended (spec.suspend)
--   Progressing  Pending, Listing, Running, and a batch the operator has not seen yet
-- Each with the message of the condition that says why.

-- The reasons that need a person (the operator's NEEDS_A_PERSON, and ImmutableFieldChanged of the
-- InvalidSpec condition); the other reasons (a peer down, Kueue) clear by themselves.
local needsAPerson = {
  InvalidSpec = true, ImmutableFieldChanged = true,
  SecretNotFound = true, SecretIncomplete = true, SecretUnreadable = true,
  OscarUnauthorized = true, ServiceNotFound = true, ServiceTokenMissing = true, ServiceResourcesInvalid = true,
  BucketNotFound = true, KeyConflict = true, ManifestKeyInUse = true, NamespaceNotWatched = true,
  UnsupportedPreviousRelease = true, SecretNotAllowed = true, EndpointNotAllowed = true, TokenRefreshFailed = true,
}

local hs = {}
local status = obj.status or {}
local phase = status.phase or "Pending"

local conditions = {}
if type(status.conditions) == "table" then
  for _, condition in ipairs(status.conditions) do
    if type(condition) == "table" and condition.type ~= nil then
      conditions[condition.type] = condition
    end
  end
end

local function said(condition, otherwise)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return otherwise
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = said(conditions["Complete"] or conditions["Progressing"], "the batch succeeded")
  return hs
end
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = said(conditions["Failed"] or conditions["Progressing"], "the batch failed")
  return hs
end

local invalid = conditions["InvalidSpec"]
if invalid ~= nil and invalid.status == "True" then
  hs.status = "Degraded"
  hs.message = said(invalid, "the live spec is ignored")
  return hs
end
local progressing = conditions["Progressing"]
if progressing ~= nil and progressing.status == "False" and needsAPerson[progressing.reason] then
  hs.status = "Degraded"
  hs.message = said(progressing, progressing.reason)
  return hs
end

if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = said(progressing, "suspended: no new ranges are invoked")
  return hs
end
hs.status = "Progressing"
if status.phase == nil then
  hs.message = said(progressing, "waiting for the operator")
else
  hs.message = said(progressing, phase)
end
return hs
