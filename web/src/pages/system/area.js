// Admin: the system group — runtime configs, the live cache, the client filter, the monitor and
// the server's own log files.
export default {
  routes: [
    {
      path: 'admin/configs',
      component: () => import('./Configs.vue'),
      meta: { title: 'system.configs.title', group: 'system', order: 60, icon: 'Setting', admin: true },
    },
    {
      path: 'admin/cache',
      component: () => import('./Cache.vue'),
      meta: { title: 'system.cache.title', group: 'system', order: 61, icon: 'Coin', admin: true },
    },
    {
      path: 'admin/client-filter',
      component: () => import('./ClientFilter.vue'),
      meta: { title: 'system.filter.title', group: 'system', order: 62, icon: 'Filter', admin: true },
    },
    {
      path: 'admin/monitor',
      component: () => import('./Monitor.vue'),
      meta: { title: 'system.monitor.title', group: 'system', order: 63, icon: 'Monitor', admin: true },
    },
    {
      path: 'admin/system-logs',
      component: () => import('./SystemLogs.vue'),
      meta: { title: 'system.logs.title', group: 'system', order: 64, icon: 'Document', admin: true },
    },
  ],
}
