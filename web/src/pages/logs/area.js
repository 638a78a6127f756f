// Admin: every relayed request (with its captured headers and body) and the audit trail of admin writes.
export default {
  routes: [
    {
      path: 'admin/request-logs',
      component: () => import('./RequestLogs.vue'),
      meta: { title: 'logs.requests.title', group: 'logs', order: 50, icon: 'Document', admin: true },
    },
    {
      path: 'admin/operation-logs',
      component: () => import('./OperationLogs.vue'),
      meta: { title: 'logs.operations.title', group: 'logs', order: 51, icon: 'Tickets', admin: true },
    },
  ],
}
