// Admin: users (and, in the same menu group, every user's API keys).
export default {
  routes: [
    {
      path: 'admin/users',
      component: () => import('./Users.vue'),
      meta: { title: 'users.title', group: 'users', order: 20, icon: 'User', admin: true },
    },
  ],
}
