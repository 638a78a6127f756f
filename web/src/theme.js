// Light or dark: the saved choice, else the system's; Element Plus follows the `dark` class on <html>.
import { ref } from 'vue'

const STORAGE_KEY = 'aiproxy.theme'
export const dark = ref(false)

export function applyTheme() {
  const saved = localStorage.getItem(STORAGE_KEY)
  dark.value = saved ? saved === 'dark' : window.matchMedia?.('(prefers-color-scheme: dark)').matches === true
  document.documentElement.classList.toggle('dark', dark.value)
}

export function toggleTheme() {
  dark.value = !dark.value
  localStorage.setItem(STORAGE_KEY, dark.value ? 'dark' : 'light')
  document.documentElement.classList.toggle('dark', dark.value)
}
