// The workspace page: its spend panel and "Set budgets" form, the dashboard's own (spend.js).
import { spendPanel } from "./spend.js";

spendPanel(document.getElementById("spend"));
