// zh-CN and en. The console's own words live in i18n/core.js; each page area brings its own
// (pages/<area>/messages.js exporting { en: {...}, 'zh-CN': {...} }), merged here.
import { computed } from 'vue'
import { createI18n } from 'vue-i18n'
import elementEn from 'element-plus/es/locale/lang/en'
import elementZhCn from 'element-plus/es/locale/lang/zh-cn'
import core from './core'

export const LOCALES = [
  { code: 'zh-CN', label: '简体中文' },
  { code: 'en', label: 'English' },
]
const STORAGE_KEY = 'aiproxy.locale'

function browserLocale() {
  const saved = localStorage.getItem(STORAGE_KEY)
  if (saved && LOCALES.some((l) => l.code === saved)) return saved
  const languages = navigator.languages?.length ? navigator.languages : [navigator.language || 'en']
  return languages.some((l) => l.toLowerCase().startsWith('zh')) ? 'zh-CN' : 'en'
}

const messages = { en: { ...core.en }, 'zh-CN': { ...core['zh-CN'] } }
const areas = import.meta.glob('../pages/*/messages.js', { eager: true })
for (const module of Object.values(areas)) {
  for (const code of Object.keys(messages)) Object.assign(messages[code], module.default?.[code] || {})
}

export const i18n = createI18n({
  legacy: false,
  locale: browserLocale(),
  fallbackLocale: 'en',
  messages,
  missingWarn: false,
  fallbackWarn: false,
})

export function setLocale(code) {
  i18n.global.locale.value = code
  localStorage.setItem(STORAGE_KEY, code)
  document.documentElement.lang = code
}
document.documentElement.lang = i18n.global.locale.value

export const elementLocale = computed(() => (i18n.global.locale.value === 'zh-CN' ? elementZhCn : elementEn))
