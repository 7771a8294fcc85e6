import { createPinia } from 'pinia'
import { createApp } from 'vue'

import { onUnauthorized } from './api/http'
import App from './App.vue'
import ElementPlusParts from './plugins/element'
import { createAppRouter } from './router'
import { useAuthStore } from './stores/auth'
import './styles.css'

const app = createApp(App)
const pinia = createPinia()
app.use(pinia)
onUnauthorized(() => useAuthStore(pinia).clear())
app.use(createAppRouter())
app.use(ElementPlusParts)
app.mount('#app')
