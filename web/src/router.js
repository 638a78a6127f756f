// Routes: the login page, then the shell with every page area's routes (pages/<area>/area.js).
// An area exports { routes: [{ path, component, meta: { title, group, order, icon, admin } }] };
// `meta.group` places it in the menu (i18n key menu.<group>), `meta.admin` keeps users out.
import { createRouter, createWebHistory } from 'vue-router'
import { isAdmin, isLoggedIn } from './session'
import Shell from './layout/Shell.vue'

const GROUP_ORDER = ['overview', 'mine', 'users', 'pool', 'billing', 'logs', 'system']

const areas = import.meta.glob('./pages/*/area.js', { eager: true })
export const pageRoutes = Object.values(areas)
  .flatMap((module) => module.default.routes)
  .sort((a, b) => (a.meta.order ?? 100) - (b.meta.order ?? 100))

/** The menu for this user: groups in a fixed order, each with its pages. */
export function menuFor(admin) {
  const groups = []
  for (const group of GROUP_ORDER) {
    const items = pageRoutes.filter((r) => r.meta.group === group && !r.meta.hidden && (admin || !r.meta.admin))
    if (items.length) groups.push({ group, items })
  }
  return groups
}

export function homePath() {
  return isAdmin.value ? '/dashboard' : '/me/usage'
}

const router = createRouter({
  history: createWebHistory('/'),
  routes: [
    { path: '/login', component: () => import('./layout/Login.vue'), meta: { public: true } },
    {
      path: '/',
      component: Shell,
      children: [
        { path: '', redirect: () => homePath() },
        ...pageRoutes,
        { path: ':missing(.*)*', component: () => import('./layout/NotFound.vue'), meta: { title: 'errors.notFound' } },
      ],
    },
  ],
})

router.beforeEach((to) => {
  if (!to.meta.public && !isLoggedIn.value) {
    // Sent back here after signing in; not when "/" merely redirected to the home page.
    return { path: '/login', query: to.redirectedFrom ? {} : { redirect: to.fullPath } }
  }
  if (to.path === '/login' && isLoggedIn.value) return homePath()
  if (to.meta.admin && !isAdmin.value) return homePath()
  return true
})

export default router
