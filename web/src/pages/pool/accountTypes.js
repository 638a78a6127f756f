// What each upstream account type needs (mirrors store/accounts.py ACCOUNT_TYPES): the credential
// fields its form shows and the settings (account columns) it requires or offers. The list of
// types itself comes from GET /api/admin/accounts/types; an unknown type gets every field.
export const CREDENTIAL_FIELDS = [
  'api_key',
  'api_secret',
  'access_token',
  'refresh_token',
  'id_token',
  'session_key',
  'session_token',
]
export const SETTING_FIELDS = ['base_url', 'region', 'api_version', 'deployment', 'organization_id']

const TYPES = {
  'claude-official': { credentials: ['api_key', 'access_token', 'refresh_token'], settings: ['base_url'], required: [] },
  'claude-console': { credentials: ['api_key', 'access_token', 'refresh_token'], settings: ['base_url'], required: [] },
  'claude-ccr': { credentials: ['api_key'], settings: ['base_url'], required: ['base_url'] },
  bedrock: {
    credentials: ['api_key', 'api_secret', 'session_token', 'access_token'],
    settings: ['region', 'base_url'],
    required: ['region'],
  },
  openai: { credentials: ['api_key'], settings: ['base_url', 'organization_id'], required: [] },
  'azure-openai': {
    credentials: ['api_key'],
    settings: ['base_url', 'api_version', 'deployment'],
    required: ['base_url', 'api_version', 'deployment'],
  },
  gemini: { credentials: ['api_key', 'access_token', 'refresh_token', 'id_token'], settings: ['base_url'], required: [] },
  'openai-responses': {
    credentials: ['api_key', 'access_token', 'refresh_token', 'id_token'],
    settings: ['base_url'],
    required: [],
  },
}

export function typeSpec(type) {
  return TYPES[type] || { credentials: CREDENTIAL_FIELDS, settings: SETTING_FIELDS, required: [] }
}

// Tag colours of the account statuses.
export const STATUS_TAGS = {
  valid: 'success',
  rate_limited: 'warning',
  overloaded: 'warning',
  unavailable: 'info',
  invalid: 'danger',
  token_expired: 'danger',
}
export const ACCOUNT_STATUSES = Object.keys(STATUS_TAGS)
