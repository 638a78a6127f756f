// Small helpers shared by the "mine" pages: UTC days and a copy button's feedback.
import { ElMessage } from 'element-plus'
import { copyText } from '../../format'

/** A UTC day as YYYY-MM-DD, `offset` days from today (the usage API counts UTC days). */
export function utcDay(offset = 0) {
  const date = new Date()
  date.setUTCDate(date.getUTCDate() + offset)
  return date.toISOString().slice(0, 10)
}

/** Every UTC day from `start` to `end` (YYYY-MM-DD, both included). */
export function daysBetween(start, end) {
  const out = []
  const date = new Date(`${start}T00:00:00Z`)
  const last = new Date(`${end}T00:00:00Z`)
  while (date <= last && out.length < 3660) {
    out.push(date.toISOString().slice(0, 10))
    date.setUTCDate(date.getUTCDate() + 1)
  }
  return out
}

/** Copy to the clipboard and say so; `t` is the page's translate function. */
export async function copyWithMessage(text, t) {
  if (await copyText(text)) ElMessage.success(t('common.copied'))
  else ElMessage.warning(t('me.copyFailed'))
}
