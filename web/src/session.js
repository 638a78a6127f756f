// Who is logged in: the token and the user from /api/auth/login, kept in localStorage.
import { computed, reactive } from 'vue'

const STORAGE_KEY = 'aiproxy.session'

function restore() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null')
    if (saved && saved.token && saved.user) return saved
  } catch {
    // a damaged entry: start logged out
  }
  return { token: '', user: null }
}

export const session = reactive(restore())

export const isLoggedIn = computed(() => Boolean(session.token))
export const isAdmin = computed(() => session.user?.role === 'admin')

export function signIn(token, user) {
  session.token = token
  session.user = user
  localStorage.setItem(STORAGE_KEY, JSON.stringify({ token, user }))
}

export function updateUser(user) {
  session.user = user
  if (session.token) localStorage.setItem(STORAGE_KEY, JSON.stringify({ token: session.token, user }))
}

export function signOut() {
  session.token = ''
  session.user = null
  localStorage.removeItem(STORAGE_KEY)
}
