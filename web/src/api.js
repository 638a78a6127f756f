// The console's one door to the relay's JSON API: the `{code, message, data}` envelope unwrapped,
// errors turned into ApiError (with the field the message names, when it names one).
import { session, signOut } from './session'

export class ApiError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`)
    this.status = status
    // The API names the offending field first: "name: field required".
    const match = /^([A-Za-z_][\w.]*): /.exec(this.message)
    this.field = match ? match[1] : null
    this.detail = match ? this.message.slice(match[0].length) : this.message
  }
}

let onUnauthorized = () => {}
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler
}

function query(params) {
  if (!params) return ''
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue
    search.append(name, String(value))
  }
  const text = search.toString()
  return text ? `?${text}` : ''
}

export async function request(method, path, { params, body, raw = false } = {}) {
  const headers = { Accept: 'application/json' }
  if (session.token) headers.Authorization = `Bearer ${session.token}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  let response
  try {
    response = await fetch(`/api${path}${query(params)}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (error) {
    throw new ApiError(0, `network error: ${error.message}`)
  }
  if (raw && response.ok) return response
  let payload = null
  const text = await response.text()
  try {
    payload = text ? JSON.parse(text) : null
  } catch {
    payload = null
  }
  if (!response.ok || (payload && typeof payload.code === 'number' && payload.code !== 0)) {
    const message = payload?.message || payload?.detail || text.slice(0, 200) || response.statusText
    if (response.status === 401 && session.token && !path.startsWith('/auth/')) {
      signOut()
      onUnauthorized()
    }
    throw new ApiError(response.status, message)
  }
  return payload && 'data' in payload ? payload.data : payload
}

export const api = {
  get: (path, params) => request('GET', path, { params }),
  post: (path, body, params) => request('POST', path, { body: body ?? {}, params }),
  put: (path, body, params) => request('PUT', path, { body: body ?? {}, params }),
  patch: (path, body, params) => request('PATCH', path, { body: body ?? {}, params }),
  del: (path, params) => request('DELETE', path, { params }),
}
