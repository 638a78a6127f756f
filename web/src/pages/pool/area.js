// Admin: the upstream account pool — accounts (with OAuth onboarding), account groups, outbound
// proxies, health checks and the error rules that decide what an upstream error does to an account.
export default {
  routes: [
    {
      path: 'admin/accounts',
      component: () => import('./Accounts.vue'),
      meta: { title: 'pool.accounts.title', group: 'pool', order: 30, icon: 'Connection', admin: true },
    },
    {
      path: 'admin/account-groups',
      component: () => import('./AccountGroups.vue'),
      meta: { title: 'pool.groups.title', group: 'pool', order: 31, icon: 'Files', admin: true },
    },
    {
      path: 'admin/proxies',
      component: () => import('./Proxies.vue'),
      meta: { title: 'pool.proxies.title', group: 'pool', order: 32, icon: 'Share', admin: true },
    },
    {
      path: 'admin/health-check',
      component: () => import('./HealthCheck.vue'),
      meta: { title: 'pool.health.title', group: 'pool', order: 33, icon: 'FirstAidKit', admin: true },
    },
    {
      path: 'admin/error-rules',
      component: () => import('./ErrorRules.vue'),
      meta: { title: 'pool.rules.title', group: 'pool', order: 34, icon: 'Warning', admin: true },
    },
  ],
}
