import { createPinia } from 'pinia'
import { createApp } from 'vue'

import App from './App.vue'
import ElementPlusParts from './plugins/element'
import { createAppRouter } from './router'
import './styles.css'

const app = createApp(App)
app.use(createPinia())
app.use(createAppRouter())
app.use(ElementPlusParts)
app.mount('#app')
