// Small helpers shared by the system pages (kept in this area: nothing here is needed elsewhere).
import { ApiError, request } from '../../api'
import { i18n } from '../../i18n'

const lang = () => (i18n.global.locale.value === 'zh-CN' ? 'zh-CN' : 'en')

/**
 * The config key a runtime-config refusal names ("config 'captcha_ttl' must be >= 30"), or the
 * field of a validation error ("session_ttl: …"), so the message can sit next to that field.
 */
export function configErrorKey(error) {
  const match = /config '([\w.]+)'/.exec(error?.message || '')
  if (match) return match[1]
  return error instanceof ApiError ? error.field : null
}

/** 1536 → "1.50 KB" (1024-based, as the API's own size_human). */
export function formatBytes(value) {
  if (value === null || value === undefined || value === '') return '—'
  let number = Number(value)
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let unit = 0
  while (number >= 1024 && unit < units.length - 1) {
    number /= 1024
    unit += 1
  }
  return unit === 0 ? `${number} B` : `${number.toFixed(2)} ${units[unit]}`
}

/** 3725 → "1h 2m" / "1小时2分"; small values in seconds. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return '—'
  let rest = Math.max(0, Math.round(Number(seconds)))
  const zh = lang() === 'zh-CN'
  const parts = []
  const units = zh
    ? [
        [86400, '天'],
        [3600, '小时'],
        [60, '分'],
        [1, '秒'],
      ]
    : [
        [86400, 'd'],
        [3600, 'h'],
        [60, 'm'],
        [1, 's'],
      ]
  for (const [size, name] of units) {
    if (rest >= size || (size === 1 && !parts.length)) {
      parts.push(`${Math.floor(rest / size)}${name}`)
      rest %= size
    }
    if (parts.length === 2) break
  }
  return parts.join(zh ? '' : ' ')
}

export function formatPercent(value) {
  if (value === null || value === undefined) return '—'
  return `${Number(value).toLocaleString(lang(), { maximumFractionDigits: 1 })}%`
}

/** Fetch an authenticated download (the Authorization header rules out a plain link) and save it. */
export async function downloadFile(path, params, fallbackName) {
  const response = await request('GET', path, { params, raw: true })
  const blob = await response.blob()
  const disposition = response.headers.get('Content-Disposition') || ''
  const match = /filename="?([^";]+)"?/.exec(disposition)
  const url = URL.createObjectURL(blob)
  const link = document.createElement('a')
  link.href = url
  link.download = match ? match[1] : fallbackName
  document.body.appendChild(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(url), 1000)
}
