// Admin: the dashboard (today's traffic, trends, top models / users / keys, account health).
export default {
  routes: [
    {
      path: 'dashboard',
      component: () => import('./Dashboard.vue'),
      meta: { title: 'dashboard.title', group: 'overview', order: 1, icon: 'Odometer', admin: true },
    },
  ],
}
