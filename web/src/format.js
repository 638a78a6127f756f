// Numbers and dates as people read them, in the console's language.
import { i18n } from './i18n'

const lang = () => (i18n.global.locale.value === 'zh-CN' ? 'zh-CN' : 'en')

export function formatTime(value) {
  if (!value) return '—'
  const date = new Date(value)
  if (Number.isNaN(date.getTime())) return String(value)
  return date.toLocaleString(lang(), { hour12: false })
}

export function formatNumber(value) {
  if (value === null || value === undefined || value === '') return '—'
  return Number(value).toLocaleString(lang())
}

export function formatCost(value) {
  if (value === null || value === undefined) return '—'
  const number = Number(value)
  return `$${number.toLocaleString(lang(), { minimumFractionDigits: 2, maximumFractionDigits: number < 1 ? 6 : 2 })}`
}

export function formatTokens(value) {
  const number = Number(value || 0)
  if (number >= 1e9) return `${(number / 1e9).toFixed(2)}B`
  if (number >= 1e6) return `${(number / 1e6).toFixed(2)}M`
  if (number >= 1e4) return `${(number / 1e3).toFixed(1)}K`
  return number.toLocaleString(lang())
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text)
    return true
  } catch {
    return false
  }
}
