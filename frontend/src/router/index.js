// Client-side routes. Flask sends index.html for any path outside /api and
// /posters, so these work on reload too.

import { createRouter, createWebHistory } from 'vue-router'

import { t } from '@/i18n'
import { useAuthStore } from '@/stores/auth'
import HomeView from '@/views/HomeView.vue'

export const routes = [
  { path: '/', name: 'home', component: HomeView, meta: { title: '首页' } },
  {
    path: '/movies',
    name: 'browse',
    component: () => import('@/views/BrowseView.vue'),
    meta: { title: '浏览电影' },
  },
  {
    path: '/movies/:id(\\d+)',
    name: 'movie',
    component: () => import('@/views/MovieView.vue'),
    props: true,
    meta: { title: '电影详情' },
  },
  {
    path: '/login',
    name: 'login',
    component: () => import('@/views/LoginView.vue'),
    meta: { title: '登录' },
  },
  {
    path: '/register',
    name: 'register',
    component: () => import('@/views/RegisterView.vue'),
    meta: { title: '注册' },
  },
  {
    path: '/me',
    name: 'me',
    component: () => import('@/views/MeView.vue'),
    meta: { title: '我的', requiresClient: true },
  },
  {
    path: '/chat',
    name: 'chat',
    component: () => import('@/views/ChatView.vue'),
    meta: { title: 'AI 影评家' },
  },
  {
    path: '/admin/login',
    name: 'admin-login',
    component: () => import('@/views/LoginView.vue'),
    props: { role: 'admin' },
    meta: { title: '管理员登录' },
  },
  {
    path: '/admin',
    component: () => import('@/views/admin/AdminLayout.vue'),
    meta: { requiresAdmin: true },
    children: [
      {
        path: '',
        name: 'admin-dashboard',
        component: () => import('@/views/admin/AdminDashboard.vue'),
        meta: { title: '数据看板', requiresAdmin: true },
      },
      {
        path: 'clients',
        name: 'admin-clients',
        component: () => import('@/views/admin/AdminClients.vue'),
        meta: { title: '用户管理', requiresAdmin: true },
      },
      {
        path: 'movies',
        name: 'admin-movies',
        component: () => import('@/views/admin/AdminMovies.vue'),
        meta: { title: '电影管理', requiresAdmin: true },
      },
    ],
  },
  {
    path: '/forbidden',
    name: 'forbidden',
    component: () => import('@/views/ForbiddenView.vue'),
    meta: { title: '无权访问' },
  },
  {
    path: '/:pathMatch(.*)*',
    name: 'not-found',
    component: () => import('@/views/NotFoundView.vue'),
    meta: { title: '页面不存在' },
  },
]

/** Decide where a navigation may go: true, or the route to go to instead. */
export function guard(to, auth) {
  if (to.meta.requiresAdmin && !auth.isAdmin) {
    // A logged-in client is refused outright; a visitor is asked to log in.
    if (auth.isClient) return { name: 'forbidden' }
    return { name: 'admin-login', query: { redirect: to.fullPath } }
  }
  if (to.meta.requiresClient && !auth.isClient) {
    return { name: 'login', query: { redirect: to.fullPath } }
  }
  return true
}

export function installGuards(router) {
  router.beforeEach(async (to) => {
    const auth = useAuthStore()
    await auth.ensureLoaded()
    return guard(to, auth)
  })
  router.afterEach((to) => {
    document.title = to.meta.title ? `${t(to.meta.title)} - MovieRec` : `MovieRec ${t('电影推荐')}`
  })
  return router
}

export function createAppRouter(history = createWebHistory()) {
  const router = createRouter({
    history,
    routes,
    scrollBehavior: () => ({ top: 0 }),
  })
  return installGuards(router)
}
