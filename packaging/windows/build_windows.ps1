<#
Build the Windows installer from a clean checkout (PowerShell, x64, Python 3.11, Inno Setup 6):

    powershell -ExecutionPolicy Bypass -File packaging\windows\build_windows.ps1
    powershell -ExecutionPolicy Bypass -File packaging\windows\build_windows.ps1 -TorchIndexUrl https://download.pytorch.org/whl/cu128

Makes build\venv-win, installs torch (PyPI's Windows torch is CPU-only; -TorchIndexUrl picks
a CUDA build, see packaging\README.md "GPU builds") and the pinned build requirements, runs
PyInstaller (dist\gpi-desktop\), runs the frozen self-test, then Inno Setup
(dist\gpi-desktop-<version>-windows-setup.exe).
#>
param(
    [string]$TorchRequirement = "torch==2.13.0",
    [string]$TorchIndexUrl = "",
    [string]$Python = "python",
    [string]$Iscc = ""
)
$ErrorActionPreference = "Stop"
$Root = (Resolve-Path (Join-Path $PSScriptRoot "..\..")).Path
$Venv = Join-Path $Root "build\venv-win"
$VPy = Join-Path $Venv "Scripts\python.exe"

function Invoke-Native([string]$What, [scriptblock]$Command) {
    Write-Host "[build_windows] $What"
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "[build_windows] failed ($LASTEXITCODE): $What" }
}

if (-not (Test-Path $VPy)) { Invoke-Native "creating $Venv" { & $Python -m venv $Venv } }
if ($TorchIndexUrl) {
    Invoke-Native "installing $TorchRequirement from $TorchIndexUrl" { & $VPy -m pip install --index-url $TorchIndexUrl $TorchRequirement }
} else {
    Invoke-Native "installing $TorchRequirement" { & $VPy -m pip install $TorchRequirement }
}
Invoke-Native "installing the pinned build requirements" { & $VPy -m pip install -r (Join-Path $Root "packaging\requirements-build.txt") }
Invoke-Native "installing the project" { & $VPy -m pip install $Root }

New-Item -ItemType Directory -Force (Join-Path $Root "build") | Out-Null
$Ico = Join-Path $Root "build\gpi-desktop.ico"
$Png = Join-Path $Root "resources\icon.png"
Invoke-Native "making the setup program's icon" {
    & $VPy -c "import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2], sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])" $Png $Ico
}

$env:HF_HUB_OFFLINE = "1"
Invoke-Native "running PyInstaller" {
    & $VPy -m PyInstaller --noconfirm --clean --log-level WARN --distpath (Join-Path $Root "dist") --workpath (Join-Path $Root "build\pyinstaller") (Join-Path $Root "packaging\gpi_desktop.spec")
}

# The console launcher runs the same code as the windowed one and shows the result.
$env:QT_QPA_PLATFORM = "offscreen"
Invoke-Native "self-test of the frozen app" { & (Join-Path $Root "dist\gpi-desktop\gpi-desktop-cli.exe") --self-test }
Remove-Item Env:QT_QPA_PLATFORM

$Version = (Select-String -Path (Join-Path $Root "gpi_desktop\__init__.py") -Pattern '__version__\s*=\s*"([^"]+)"').Matches[0].Groups[1].Value
if (-not $Iscc) { $Found = Get-Command iscc.exe -ErrorAction SilentlyContinue; if ($Found) { $Iscc = $Found.Source } }
if (-not $Iscc) { $Iscc = Join-Path ${env:ProgramFiles(x86)} "Inno Setup 6\ISCC.exe" }
$IsccArgs = @("/DAppVersion=$Version", "/DSourceRoot=$Root")
if ($TorchIndexUrl -match "/cu\d+") { $IsccArgs += "/DDiskSpanning" }
Invoke-Native "running Inno Setup ($Iscc)" { & $Iscc @IsccArgs (Join-Path $Root "packaging\windows\gpi-desktop.iss") }
Get-ChildItem (Join-Path $Root "dist") -Filter "gpi-desktop-*-windows-setup*" | ForEach-Object { Write-Host "[build_windows] $($_.Name): $([math]::Round($_.Length / 1MB)) MiB" }
