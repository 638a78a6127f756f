// Admin: every user's API keys (list, create for a user, limits and bindings, toggle, delete).
export default {
  routes: [
    {
      path: 'admin/api-keys',
      component: () => import('./ApiKeys.vue'),
      meta: { title: 'keys.title', group: 'users', order: 21, icon: 'Key', admin: true },
    },
  ],
}
