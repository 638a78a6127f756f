// Admin: the model price book, packages for sale and the packages each user holds.
export default {
  routes: [
    {
      path: 'admin/models',
      component: () => import('./Models.vue'),
      meta: { title: 'billing.models.title', group: 'billing', order: 40, icon: 'Cpu', admin: true },
    },
    {
      path: 'admin/packages',
      component: () => import('./Packages.vue'),
      meta: { title: 'billing.packages.title', group: 'billing', order: 41, icon: 'Goods', admin: true },
    },
    {
      path: 'admin/user-packages',
      component: () => import('./UserPackages.vue'),
      meta: { title: 'billing.userPackages.title', group: 'billing', order: 42, icon: 'Present', admin: true },
    },
  ],
}
