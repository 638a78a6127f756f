// Every signed-in user (admins too): my usage, my API keys, my packages, my profile.
export default {
  routes: [
    {
      path: 'me/usage',
      component: () => import('./Usage.vue'),
      meta: { title: 'me.usage.title', group: 'mine', order: 10, icon: 'TrendCharts' },
    },
    {
      path: 'me/keys',
      component: () => import('./Keys.vue'),
      meta: { title: 'me.keys.title', group: 'mine', order: 11, icon: 'Key' },
    },
    {
      path: 'me/packages',
      component: () => import('./Packages.vue'),
      meta: { title: 'me.packages.title', group: 'mine', order: 12, icon: 'Present' },
    },
    {
      path: 'me/profile',
      component: () => import('./Profile.vue'),
      meta: { title: 'me.profile.title', group: 'mine', order: 13, icon: 'Avatar' },
    },
  ],
}
