// Small form helpers of the billing pages: numbers typed as text (the API judges them and says
// what is wrong), comma-separated lists edited as tags, and API messages that name their field
// without the "field: " prefix ("model_id already exists").

/** A typed number as the API wants it: '' → undefined (left out), a number → Number, else the text. */
export function typedNumber(value) {
  const text = String(value ?? '').trim()
  if (text === '') return undefined
  return /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text) ? Number(text) : text
}

/** A number from the API as text for an input. */
export function numberText(value) {
  return value === null || value === undefined ? '' : String(value)
}

export function splitList(text) {
  return String(text || '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
}

export function joinList(items) {
  return (items || []).join(',')
}

/** `errors.show`, plus messages that begin with a known field name and a space. */
export function showFieldError(errors, error, known) {
  errors.show(error, known)
  if (!errors.general.value) return
  const match = /^([a-z_]+) /.exec(error?.message || '')
  if (match && known.includes(match[1])) {
    errors.general.value = ''
    errors.fields[match[1]] = error.message
  }
}

/** Used / quota as a percentage (0 when the quota is 0 = no cap). */
export function percent(used, quota) {
  if (!quota) return 0
  return Math.min(100, Math.round((Number(used || 0) / Number(quota)) * 1000) / 10)
}
