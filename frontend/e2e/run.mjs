// End-to-end test of the built site in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core), against a running Flask server on real data.
//
//   node e2e/run.mjs http://127.0.0.1:PORT
//
// Environment: E2E_ADMIN_USERNAME (default root), E2E_ADMIN_PASSWORD (default the
// test suite's admin-pass-2026), E2E_ARTIFACTS (screenshot folder, default
// ../tests/artifacts/e2e beside the checkout), CHROMIUM_PATH (default
// /usr/bin/chromium). Each step prints "ok N - ..." or "not ok N - ..."; the last
// line is "N passed, N failed"; the exit code is 0 only when every step passed.
// tests/test_e2e_browser.py starts the server and runs this script.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { chromium } from 'playwright-core'

const here = path.dirname(fileURLToPath(import.meta.url))
const base = (process.argv[2] || process.env.E2E_BASE_URL || '').replace(/\/$/, '')
if (!base) {
  console.error('usage: node e2e/run.mjs <base-url>')
  process.exit(2)
}
const adminUsername = process.env.E2E_ADMIN_USERNAME || 'root'
const adminPassword = process.env.E2E_ADMIN_PASSWORD || 'admin-pass-2026'
const artifacts = path.resolve(
  process.env.E2E_ARTIFACTS || path.join(here, '..', '..', 'tests', 'artifacts', 'e2e'),
)
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS || 15000)

mkdirSync(artifacts, { recursive: true })

const results = []
let page
let stepNumber = 0

function check(condition, message) {
  if (!condition) throw new Error(message)
}

async function shot(name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true })
}

/** Run one named step; on failure save a screenshot and stop the run. */
async function step(name, body) {
  stepNumber += 1
  const started = Date.now()
  try {
    await body()
    results.push({ name, ok: true })
    console.log(`ok ${stepNumber} - ${name} (${Date.now() - started} ms)`)
  } catch (error) {
    results.push({ name, ok: false })
    console.log(`not ok ${stepNumber} - ${name}`)
    console.log(`  # ${String(error && error.stack ? error.stack : error).split('\n').join('\n  # ')}`)
    console.log(`  # at ${page.url()}`)
    await shot(`failed-${String(stepNumber).padStart(2, '0')}`).catch(() => {})
    throw error
  }
}

/** Return the cards of the grid as [{title, reason, posterOk, placeholder}]. */
async function readCards(scope = 'body') {
  return page.$$eval(`${scope} [data-testid="movie-card"]`, (cards) =>
    cards.map((card) => {
      const img = card.querySelector('img[data-testid="poster"]')
      const reason = card.querySelector('[data-testid="movie-reason"]')
      return {
        title: card.querySelector('[data-testid="movie-title"]').textContent.trim(),
        reason: reason ? reason.textContent.trim() : '',
        posterOk: Boolean(img && img.complete && img.naturalWidth > 0),
        placeholder: Boolean(card.querySelector('[data-testid="poster-placeholder"]')),
        href: card.getAttribute('href'),
      }
    }),
  )
}

/** Wait until every poster image of the page has loaded or fallen back. */
async function waitForPosters() {
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll('img[data-testid="poster"]')].every(
        (img) => img.complete,
      ),
    null,
    { timeout: TIMEOUT },
  )
}

async function waitForCards(count, scope = 'body') {
  await page.waitForFunction(
    ([selector, n]) => document.querySelectorAll(selector).length >= n,
    [`${scope} [data-testid="movie-card"]`, count],
    { timeout: TIMEOUT },
  )
  await waitForPosters()
}

async function apiStatus(url) {
  return page.evaluate(async (target) => {
    const response = await fetch(target, { credentials: 'same-origin' })
    return { status: response.status, body: await response.json() }
  }, url)
}

const userDataDir = mkdtempSync(path.join(tmpdir(), 'movierec-e2e-'))
let context
const consoleErrors = []
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    locale: 'zh-CN',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
  context.setDefaultTimeout(TIMEOUT)
  page = context.pages()[0] || (await context.newPage())
  page.on('pageerror', (error) => consoleErrors.push(String(error)))

  const username = `e2e_${Date.now().toString(36)}`
  const password = 'e2e-pass-2026'
  let visitorTitles = []

  await step('a visitor sees 12 films with posters or placeholders', async () => {
    await page.goto(`${base}/`)
    await waitForCards(12)
    const cards = await readCards()
    check(cards.length === 12, `expected 12 cards, saw ${cards.length}`)
    const bad = cards.filter((c) => !c.posterOk && !c.placeholder)
    check(bad.length === 0, `cards without a poster: ${bad.map((c) => c.title).join(', ')}`)
    const title = await page.textContent('[data-testid="home-title"]')
    check(title.includes('热门与精选'), `visitor home title: ${title}`)
    visitorTitles = cards.map((c) => c.title)
    await shot('01-visitor-home')
  })

  await step('a visitor registers', async () => {
    await page.goto(`${base}/register`)
    await page.fill('[data-testid="register-username"]', username)
    await page.fill('[data-testid="register-password"]', password)
    await page.fill('[data-testid="register-confirm"]', password)
    await page.click('[data-testid="register-submit"]')
    await page.waitForURL(/\/login/)
    const prefilled = await page.inputValue('[data-testid="login-username"]')
    check(prefilled === username, `login form prefilled with ${prefilled}`)
  })

  await step('the new client logs in', async () => {
    await page.fill('[data-testid="login-password"]', password)
    await page.click('[data-testid="login-submit"]')
    await page.waitForFunction(
      (name) => document.querySelector('[data-testid="current-user"]')?.textContent === name,
      username,
    )
    const me = await apiStatus('/api/auth/me')
    check(me.status === 200 && me.body.user.username === username, 'GET /api/auth/me')
    check(me.body.role === 'client', `role ${me.body.role}`)
  })

  await step('browsing sorts films by score', async () => {
    await page.goto(`${base}/movies`)
    await waitForCards(12)
    await page.click('.el-radio-button:has-text("评分最高")')
    await page.waitForURL(/sort=score/)
    await page.waitForFunction(() => {
      const scores = [...document.querySelectorAll('[data-testid="movie-card"] .score')]
      return scores.length >= 12 && Number(scores[0].textContent) >= 4.5
    })
    const scores = await page.$$eval('[data-testid="movie-card"] .score', (els) =>
      els.map((el) => Number(el.textContent)),
    )
    // The order is by the damped score (few ratings pull a film towards the mean),
    // so the shown means are high but need not be strictly descending.
    check(scores.every((score) => score >= 4.0), `not best first: ${scores.join(', ')}`)
    const titles = await page.$$eval('[data-testid="movie-card"] [data-testid="movie-title"]', (els) =>
      els.slice(0, 3).map((el) => el.textContent),
    )
    check(titles.some((title) => title.includes("Schindler's List")), `top: ${titles}`)
  })

  await step('a search for "toy" finds Toy Story', async () => {
    await page.goto(`${base}/movies`)
    await page.fill('[data-testid="search-input"]', 'toy')
    await page.press('[data-testid="search-input"]', 'Enter')
    await page.waitForURL(/q=toy/)
    await page.waitForFunction(() =>
      [...document.querySelectorAll('[data-testid="movie-title"]')].some((el) =>
        el.textContent.startsWith('Toy Story'),
      ),
    )
    const titles = (await readCards()).map((c) => c.title)
    check(titles.includes('Toy Story (1995)'), `results: ${titles.join(', ')}`)
    await waitForPosters()
    await shot('02-search-toy')
  })

  await step('the film page shows facts and related films', async () => {
    await page.click('[data-testid="movie-card"]:has-text("Toy Story (1995)")')
    await page.waitForURL(/\/movies\/1$/)
    await page.waitForSelector('[data-testid="movie-heading"]')
    const heading = await page.textContent('[data-testid="movie-heading"]')
    check(heading.trim() === 'Toy Story (1995)', `heading ${heading}`)
    await waitForCards(6, '[data-testid="related"]')
    const related = await readCards('[data-testid="related"]')
    check(related.length === 6, `expected 6 related films, saw ${related.length}`)
    check(!related.some((c) => c.title === 'Toy Story (1995)'), 'related excludes the film')
    await shot('03-film-toy-story')
  })

  await step('the client rates Toy Story 5 stars', async () => {
    await page.click('[data-testid="my-rating"] .el-rate__item:nth-child(5)')
    // Earlier toasts ("登录成功") may still be on screen: wait for this one.
    await page.waitForSelector('.el-message--success:has-text("已评分:5 星")')
    const detail = await apiStatus('/api/movies/detail/1')
    check(detail.body.my_rating === 5, `my_rating ${detail.body.my_rating}`)
    await shot('04-rated')
  })

  await step('the home page turns into personal recommendations with reasons', async () => {
    await page.goto(`${base}/`)
    await page.waitForFunction(() =>
      document.querySelector('[data-testid="home-title"]')?.textContent.includes('为你推荐'),
    )
    await waitForCards(12)
    const cards = await readCards()
    check(cards.length === 12, `expected 12 cards, saw ${cards.length}`)
    const withoutReason = cards.filter((c) => !c.reason)
    check(withoutReason.length === 0, `cards without a reason: ${withoutReason.length}`)
    const personal = cards.filter((c) => c.reason.includes('Toy Story'))
    check(
      personal.length > 0,
      `no reason refers to the rated film: ${cards.map((c) => c.reason).join(' | ')}`,
    )
    check(!cards.some((c) => c.title === 'Toy Story (1995)'), 'the rated film is not recommended')
    const overlap = cards.filter((c) => visitorTitles.includes(c.title)).length
    check(overlap < 12, 'the personal list differs from the visitor list')
    await shot('05-personal-home')
  })

  await step('my ratings list the rating', async () => {
    await page.goto(`${base}/me`)
    await page.waitForSelector('[data-testid="my-ratings"] .el-table__row')
    const text = await page.textContent('[data-testid="my-ratings"]')
    check(text.includes('Toy Story (1995)'), 'Toy Story in my ratings')
  })

  await step('the AI movie expert answers with film cards', async () => {
    await page.goto(`${base}/chat`)
    await page.fill('[data-testid="chat-input"]', '推荐几部类似 Heat 的电影')
    await page.click('[data-testid="chat-send"]')
    await page.waitForSelector('[data-testid="chat-assistant"] [data-testid="chat-movie"]')
    await page.waitForFunction(
      () => !document.querySelector('[data-testid="chat-send"]').classList.contains('is-loading'),
    )
    const reply = await page.textContent('[data-testid="chat-assistant"] .bubble')
    check(reply.includes('Heat'), `reply: ${reply}`)
    const cards = await page.$$eval('[data-testid="chat-movie"]', (links) =>
      links.map((a) => ({ title: a.textContent.trim(), href: a.getAttribute('href') })),
    )
    check(cards.length >= 3, `film cards: ${cards.length}`)
    check(cards.every((c) => /^\/movies\/\d+$/.test(c.href)), 'cards link to film pages')
    await shot('06-chat')
    await page.click('[data-testid="chat-movie"] >> nth=0')
    await page.waitForURL(new RegExp(`${cards[0].href}$`))
    await page.waitForSelector('[data-testid="movie-heading"]')
  })

  await step('a client cannot open the admin pages', async () => {
    await page.goto(`${base}/admin`)
    await page.waitForSelector('[data-testid="forbidden"]')
    check(!page.url().endsWith('/admin'), `still on ${page.url()}`)
    check((await page.$('[data-testid="stats"]')) === null, 'no stats shown to a client')
    const stats = await apiStatus('/api/admin/stats')
    check(stats.status === 403, `GET /api/admin/stats as a client: ${stats.status}`)
    check(typeof stats.body.error.message === 'string', 'JSON error body')
    await shot('07-client-forbidden')
  })

  await step('the admin logs in and sees the stats and a chart', async () => {
    await page.click('button:has-text("退出")')
    await page.waitForSelector('button:has-text("登录")')
    await page.goto(`${base}/admin`)
    await page.waitForURL(/\/admin\/login/)
    await page.fill('[data-testid="login-username"]', adminUsername)
    await page.fill('[data-testid="login-password"]', adminPassword)
    await page.click('[data-testid="login-submit"]')
    await page.waitForURL(/\/admin$/)
    await page.waitForSelector('[data-testid="stat-movie_count"]')
    const films = await page.textContent('[data-testid="stat-movie_count"]')
    check(films.includes('1,682'), `film count card: ${films}`)
    const clients = await page.textContent('[data-testid="stat-client_count"]')
    check(/\d/.test(clients), `client count card: ${clients}`)
    const rmse = await page.textContent('[data-testid="stat-rmse"]')
    check(/\d\.\d{3}/.test(rmse), `RMSE card: ${rmse}`)
    await page.waitForSelector('[data-testid="chart"] canvas')
    const charts = await page.$$('[data-testid="chart"] canvas')
    check(charts.length >= 1, 'at least one chart drawn')
    await page.waitForTimeout(800) // let the chart animation finish for the screenshot
    await shot('08-admin-dashboard')
  })

  await step('the admin sees the clients table', async () => {
    await page.goto(`${base}/admin/clients`)
    await page.waitForSelector('[data-testid="clients-table"] .el-table__row')
    const text = await page.textContent('[data-testid="clients-table"]')
    check(text.includes(username), 'the new client is listed')
    await shot('09-admin-clients')
  })

  await step('the admin adds a film, finds it and deletes it', async () => {
    const title = `E2E 测试电影 ${Date.now().toString(36)}`
    await page.goto(`${base}/admin/movies`)
    await page.waitForSelector('[data-testid="movies-table"] .el-table__row')
    await page.click('[data-testid="movie-create"]')
    await page.click('[data-testid="movie-save"]')
    await page.waitForSelector('.el-form-item__error:has-text("请输入片名")')
    await page.fill('[data-testid="movie-title-input"]', title)
    await page.click('[data-testid="movie-save"]')
    await page.waitForSelector('.el-message--success:has-text("已添加")')
    await page.fill('[data-testid="movie-search"]', title)
    await page.press('[data-testid="movie-search"]', 'Enter')
    await page.waitForSelector(`[data-testid="movies-table"] .el-table__row:has-text("${title}")`)
    const rows = await page.$$('[data-testid="movies-table"] .el-table__body-wrapper .el-table__row')
    check(rows.length === 1, `rows for the new film: ${rows.length}`)
    await shot('10-admin-film-added')
    await page.click('[data-testid="movies-table"] .el-table__row .el-button--danger')
    await page.click('.el-message-box__btns .el-button--primary')
    await page.waitForSelector('.el-message--success:has-text("已删除")')
    await page.waitForSelector('[data-testid="movies-table"] .el-table__empty-text')
  })

  await step('the interface switches to English and back', async () => {
    await page.goto(`${base}/admin`)
    await page.waitForSelector('[data-testid="stat-movie_count"]')
    await page.click('[data-testid="locale-switch"]')
    await page.waitForSelector('h1:has-text("Dashboard")')
    const nav = await page.textContent('.topbar')
    check(nav.includes('Browse') && nav.includes('Log out'), `English nav: ${nav}`)
    const label = await page.textContent('[data-testid="stat-movie_count"] .stat-label')
    check(label.trim() === 'Films', `stat label: ${label}`)
    await page.waitForTimeout(600)
    await shot('11-admin-english')
    await page.click('[data-testid="locale-switch"]')
    await page.waitForSelector('h1:has-text("数据看板")')
  })

  check(consoleErrors.length === 0, `page errors: ${consoleErrors.join(' | ')}`)
} catch (error) {
  if (!results.some((r) => !r.ok)) {
    console.log(`not ok - ${error && error.message ? error.message : error}`)
    results.push({ name: 'run', ok: false })
  }
} finally {
  if (context) await context.close().catch(() => {})
  rmSync(userDataDir, { recursive: true, force: true })
}

const passed = results.filter((r) => r.ok).length
const failed = results.length - passed
console.log(`e2e: ${passed} passed, ${failed} failed`)
console.log(`screenshots: ${artifacts}`)
process.exit(failed === 0 && passed > 0 ? 0 : 1)
