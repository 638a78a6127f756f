import { createApp } from 'vue'
import ElementPlus from 'element-plus'
import * as Icons from '@element-plus/icons-vue'
import 'element-plus/dist/index.css'
import 'element-plus/theme-chalk/dark/css-vars.css'
import './style.css'
import App from './App.vue'
import router from './router'
import { i18n } from './i18n'
import { setUnauthorizedHandler } from './api'

const app = createApp(App)
for (const [name, component] of Object.entries(Icons)) app.component(`Icon${name}`, component)
app.use(ElementPlus)
app.use(i18n)
app.use(router)
// A token the relay no longer accepts (expired, password changed, user disabled): back to login.
setUnauthorizedHandler(() => router.push({ path: '/login', query: { redirect: router.currentRoute.value.fullPath } }))
app.mount('#app')
