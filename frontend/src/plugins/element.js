// Element Plus, registered component by component so the bundle keeps only what
// the views use. Child components (ElFormItem, ElOption, ElTableColumn, ElTabPane,
// ElMenuItem, ElDescriptionsItem, ElRadioGroup, ElRadioButton) are registered by
// their parent's install; tests/plugins.spec.js checks every <el-*> tag resolves.

import 'element-plus/dist/index.css'

import {
  ElAlert,
  ElButton,
  ElCard,
  ElConfigProvider,
  ElDatePicker,
  ElDescriptions,
  ElDialog,
  ElDrawer,
  ElEmpty,
  ElForm,
  ElInput,
  ElLink,
  ElLoading,
  ElMenu,
  ElPagination,
  ElProgress,
  ElRadio,
  ElRate,
  ElResult,
  ElSelect,
  ElSkeleton,
  ElTable,
  ElTabs,
  ElTag,
} from 'element-plus'

const components = [
  ElAlert,
  ElButton,
  ElCard,
  ElConfigProvider,
  ElDatePicker,
  ElDescriptions,
  ElDialog,
  ElDrawer,
  ElEmpty,
  ElForm,
  ElInput,
  ElLink,
  ElMenu,
  ElPagination,
  ElProgress,
  ElRadio,
  ElRate,
  ElResult,
  ElSelect,
  ElSkeleton,
  ElTable,
  ElTabs,
  ElTag,
]

export default {
  install(app) {
    for (const component of components) app.use(component)
    app.use(ElLoading)
  },
}
