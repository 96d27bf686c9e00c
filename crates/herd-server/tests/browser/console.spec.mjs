// The web console in Debian's Chromium, driven by playwright-core (no downloaded browser).
// Started by crates/herd-server/tests/console_browser.rs, which runs the center, sets up the
// worked example (45a can switch, 45b is exposed), and sends a live event when this script
// prints LIVE-READY. Exits non-zero on the first failed expectation.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const url = process.env.HERD_URL;
const token = process.env.HERD_TOKEN;
const shots = process.env.HERD_SCREENSHOTS;
const link = process.env.HERD_LINK;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!url || !token || !shots || !link) {
  throw new Error("HERD_URL, HERD_TOKEN, HERD_LINK and HERD_SCREENSHOTS are required");
}
mkdirSync(shots, { recursive: true });

const expect = (condition, what) => {
  if (!condition) throw new Error(`expected: ${what}`);
  console.log(`ok - ${what}`);
};

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  // The center's certificate is issued by its own CA, which this browser profile does not hold.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => {
    // Failed loads are judged by their responses, below.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      errors.push(message.text());
    }
  });
  page.on("response", (response) => {
    // The sign-in refusal after sign-out is expected; nothing else may fail.
    if (response.status() >= 400 && !/\/console\/(login|link\/)/.test(response.url())) {
      errors.push(`${response.status()} ${response.url()}`);
    }
  });
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

  // Sign in, with the keyboard only.
  await page.goto(`${url}/console/`);
  expect(page.url().includes("/console/login"), "an anonymous visit lands on sign-in");
  expect(await page.getByText("Sign in to see the fleet.").isVisible(), "sign-in says why");
  await shot("01-sign-in");
  await page.keyboard.type(token);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Fleet overview" }).waitFor({ timeout: 15000 }).catch(async () => {
    throw new Error(`sign-in did not reach the overview: ${page.url()}\n${await page.locator("main").innerText()}`);
  });
  expect(await page.getByRole("heading", { name: "Fleet overview" }).isVisible(), "signed in to the overview");
  await shot("02-overview");

  // Find the exposed terminal and read why.
  await page.getByRole("link", { name: "Exposed", exact: true }).click();
  await page.getByRole("heading", { name: "Exposed terminals" }).waitFor();
  await shot("03-exposed");
  await page.getByRole("link", { name: "45b", exact: true }).click();
  await page.getByRole("heading", { name: "Terminal 45b" }).waitFor();
  const why = await page.locator("main").innerText();
  expect(why.includes("Why: threats not covered now"), "the terminal page says why it is exposed");
  expect(why.includes("virus-a"), "the uncovered threat is named");
  expect(why.includes("vaccine-b"), "what would cover it is named");
  await shot("04-terminal-45b");

  // Search the fleet.
  await page.getByRole("link", { name: "Terminals", exact: true }).click();
  await page.getByLabel("Search id or user").fill("user-a");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/q=user-a/);
  const rows = await page.locator("table.terminals tbody tr").count();
  expect(rows === 1, "searching by user finds one terminal");
  await shot("05-terminals");

  // Edit a placement rule: add one through the form's last row.
  await page.getByRole("link", { name: "Groups & rules" }).click();
  await page.getByLabel("Group of rule 2").selectOption("same-vendor");
  await page.getByLabel("User of rule 2").fill("user-c");
  await page.getByRole("button", { name: "Save rules" }).click();
  await page.getByText("Saved 2 rule(s).").waitFor();
  expect(await page.getByLabel("User of rule 2").inputValue() === "user-c", "the new rule is saved and shown");
  await shot("06-rules");

  // The coverage matrix, filtered.
  await page.getByRole("link", { name: "Coverage", exact: true }).click();
  await page.getByLabel("Threat id or name").fill("virus-a");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/q=virus-a/);
  expect((await page.locator("table.matrix tbody tr").count()) === 1, "the matrix filters to one threat");
  await shot("07-coverage");

  // A live event arrives without reloading.
  await page.getByRole("link", { name: "Live", exact: true }).click();
  await page.getByText("Connected").waitFor({ timeout: 15000 });
  console.log("LIVE-READY");
  const row = page.locator("#live-rows tr", { hasText: "Eicar-Test-Signature" });
  await row.waitFor({ timeout: 30000 });
  expect((await row.innerText()).includes("45a"), "the live event names its terminal");
  await shot("08-live");

  // Pause and resume a rollout.
  await page.getByRole("link", { name: "Rollouts", exact: true }).click();
  await page.getByRole("heading", { name: "Rollouts" }).waitFor();
  await page.getByRole("button", { name: /^Pause / }).first().click();
  await page.getByText("the rollout is now paused").waitFor();
  expect(await page.locator("table.rollouts").getByText("paused", { exact: true }).first().isVisible(), "a rollout is paused");
  await shot("09-rollout-paused");
  await page.getByRole("button", { name: /^Resume / }).first().click();
  await page.getByText("the rollout is now rolling").waitFor();
  expect(true, "the paused rollout resumed");
  await shot("10-rollouts");

  // Give a sample a verdict: its signature goes into Herd's set.
  await page.getByRole("link", { name: "Samples", exact: true }).click();
  await page.getByRole("heading", { name: "Samples" }).waitFor();
  const sampleRow = page.locator("table.samples tbody tr", { hasText: "<b>dropper</b>.exe" });
  expect((await sampleRow.count()) === 1, "the sample awaits a verdict, its markup name shown as text");
  await shot("11-samples");
  await sampleRow.getByLabel(/^Threat id for /).fill("dropper-x");
  await sampleRow.getByRole("button", { name: /^Malicious: / }).click();
  await page.getByText("judged malicious").waitFor();
  expect(await page.getByText("No sample awaits a verdict.").isVisible(), "no sample awaits a verdict any more");
  await page.getByRole("link", { name: "All samples" }).click();
  expect(await page.getByText("malicious — in Herd's set").isVisible(), "the sample's signature is in Herd's set");
  await page.getByRole("link", { name: "Herd's set", exact: true }).click();
  await page.getByRole("heading", { name: "Herd's set", level: 1 }).waitFor();
  const published = page.locator("table.signatures tbody tr", { hasText: "Herd.Immunity.dropper-x." });
  expect((await published.count()) === 1, "Herd's set page lists the signature the verdict published");
  await shot("11b-herds-set");

  // Faults, alerts and messages: send a message to the exposed terminal.
  await page.getByRole("link", { name: "Faults", exact: true }).click();
  await page.getByRole("heading", { name: "Faults" }).waitFor();
  await shot("12-faults");
  await page.getByRole("link", { name: "Alerts & messages" }).click();
  await page.getByLabel("or terminal").fill("45b");
  await page.getByLabel("Message", { exact: true }).fill("Your phone is exposed: please install vaccine-b.");
  await page.getByRole("button", { name: "Send message" }).click();
  await page.getByText("sent to terminal 45b").waitFor();
  expect(await page.locator("table.messages").getByText("please install vaccine-b").isVisible(), "the message is in the thread");
  await shot("13-alerts-messages");

  // Sign out: the session is gone.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/console\/login/);
  await page.goto(`${url}/console/terminals`);
  expect(page.url().includes("/console/login"), "after sign-out the console asks to sign in again");
  await shot("14-signed-out");

  // A one-time link from `herd console link`: opening it asks, its button signs in, once.
  await page.goto(link);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet overview" }).waitFor();
  expect((await page.locator(".who").innerText()).includes("browser test"), "the link signed in as its label");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/console\/login/);
  await page.goto(link);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("was used at").waitFor();
  expect(true, "a used link is refused, saying when it was used");

  expect(errors.length === 0, `no script errors (${errors.join("; ")})`);
} finally {
  await browser.close();
}
